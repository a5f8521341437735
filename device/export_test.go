package device

// DecodeIdentity and DecodeAuthority decode key files' bytes as Load and
// LoadAuthority do once the file is read, for the fuzz targets.
var (
	DecodeIdentity  = decodeIdentity
	DecodeAuthority = decodeAuthority
)

// EncodeIdentity returns the key file's bytes Save writes.
func EncodeIdentity(id *Identity) []byte { return id.encode() }
