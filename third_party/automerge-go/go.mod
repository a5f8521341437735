module github.com/automerge/automerge-go

go 1.19

require (
	github.com/stretchr/testify v1.8.4
	honnef.co/go/tools v0.4.5
)

require (
	github.com/BurntSushi/toml v1.2.1 // indirect
	github.com/davecgh/go-spew v1.1.1 // indirect
	github.com/pmezard/go-difflib v1.0.0 // indirect
	golang.org/x/exp/typeparams v0.0.0-20230213192124-5e25df0256eb // indirect
	golang.org/x/mod v0.10.0 // indirect
	golang.org/x/sys v0.8.0 // indirect
	golang.org/x/tools v0.9.4-0.20230601214343-86c93e8732cc // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
)
