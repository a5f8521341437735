package identity_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/chartsync/chartsync/record"
)

// A labelled pair of registrations: the same patient or not, and the
// situation that made it.
type pair struct {
	category string
	same     bool
	a, b     record.Patient
}

var (
	femaleNames = []string{"Wanjiru", "Akinyi", "Njeri", "Atieno", "Amina", "Fatuma", "Lakshmi", "Priya", "Sunita", "Anjali",
		"Kavita", "Akosua", "Abena", "Efua", "Chiamaka", "Ngozi", "Aisha", "Halima", "Grace", "Mercy", "Esther", "Wambui",
		"Nyambura", "Achieng", "Rekha", "Geeta", "Pooja", "Adwoa", "Yaa", "Adaeze", "Zainab", "Khadija", "Rehema", "Neema"}
	maleNames = []string{"Otieno", "Kamau", "Mohammed", "Rajesh", "Suresh", "Ramesh", "Kwame", "Kofi", "Kwabena", "Chinedu",
		"Emeka", "Joseph", "Peter", "Ibrahim", "Yusuf", "Arjun", "Vijay", "Kiprono", "Baraka", "Juma", "Omondi", "Ravi",
		"Sanjay", "Kwaku", "Yaw", "Obinna", "Musa", "Hamisi", "Mutua", "Kipchoge", "Anil", "Deepak"}
	familyNames = []string{"Mwangi", "Odhiambo", "Ochieng", "Kariuki", "Sharma", "Patel", "Kumar", "Singh", "Yadav", "Mensah",
		"Asante", "Boateng", "Owusu", "Okafor", "Okeke", "Nwosu", "Abdullahi", "Hassan", "Njoroge", "Kiprop", "Cheruiyot",
		"Otieno", "Wafula", "Mutiso", "Gupta", "Verma", "Mishra", "Appiah", "Danso", "Eze", "Bello", "Mohamed"}
	villages = []string{"Kamuga", "Gatundu", "Lwanda", "Asafo", "Rampur", "Sitapur", "Bawku", "Nsawam", "Bondo", "Maragua",
		"Chandpur", "Nyeri", "Kisumu", "Aburi", "Sultanpur", "Kakamega", "Mbita", "Akropong", "Bhadohi", "Kericho"}
	// Sex-paired names of one root: relatives of the other sex.
	pairedNames = [][2]string{{"Josephine", "Joseph"}, {"Francisca", "Francis"}, {"Paulina", "Paul"}, {"Christine", "Christian"},
		{"Roberta", "Robert"}, {"Danielle", "Daniel"}, {"Yaa", "Yaw"}, {"Akua", "Kwaku"}, {"Abena", "Kwabena"}, {"Adjoa", "Kojo"}}
	// Spellings one name is registered under at different places.
	knownVariants = [][]string{{"Mohammed", "Muhammad", "Mohamed", "Mohammad"}, {"Lakshmi", "Laxmi", "Lakshmy"},
		{"Priya", "Pria", "Preeya"}, {"Fatuma", "Fatima"}, {"Wanjiru", "Wanjiro"}, {"Akosua", "Akossua"}, {"Kofi", "Coffie"},
		{"Mwangi", "Muangi"}, {"Ochieng", "Ochien'g", "Otieng"}, {"Chiamaka", "Chiamaka"}, {"Kwabena", "Kobina"},
		{"Suresh", "Sooresh"}, {"Khadija", "Hadija", "Khadijah"}, {"Zainab", "Zeinab", "Zaynab"}, {"Njoroge", "Njoroje"},
		{"Yusuf", "Yusuph", "Yousuf"}, {"Ibrahim", "Ibrahimu", "Ebrahim"}, {"Esther", "Ester"}, {"Cheruiyot", "Cheruyot"}}
)

// variant spells a name as another clerk might: a known variant, or one
// of the usual slips (a vowel heard otherwise, a doubled or undoubled
// letter, an h dropped or added, ph for f, c for k, a letter dropped or
// two swapped).
func variant(r *rand.Rand, name string) string {
	for _, vs := range knownVariants {
		if i := slices.Index(vs, name); i >= 0 && r.IntN(2) == 0 {
			others := slices.Delete(slices.Clone(vs), i, i+1)
			return others[r.IntN(len(others))]
		}
	}
	w := []byte(name)
	for range 20 {
		i := 1 + r.IntN(len(w)-1)
		c := w[i]
		switch r.IntN(7) {
		case 0: // a vowel heard otherwise
			swap := map[byte]byte{'i': 'e', 'e': 'i', 'u': 'o', 'o': 'u', 'a': 'e', 'y': 'i'}
			if s, ok := swap[c]; ok {
				w[i] = s
				return string(w)
			}
		case 1: // a doubled letter
			if !strings.ContainsRune("aeiouy", rune(c)) {
				return string(w[:i]) + string(c) + string(w[i:])
			}
		case 2: // an undoubled letter
			if i+1 < len(w) && w[i+1] == c {
				return string(w[:i]) + string(w[i+1:])
			}
		case 3: // h dropped or added after a consonant
			if c == 'h' && i > 0 {
				return string(w[:i]) + string(w[i+1:])
			}
			if strings.ContainsRune("kstdb", rune(c)) && i+1 < len(w) && w[i+1] != 'h' {
				return string(w[:i+1]) + "h" + string(w[i+1:])
			}
		case 4: // ph and f, c and k
			switch c {
			case 'f':
				return string(w[:i]) + "ph" + string(w[i+1:])
			case 'k':
				w[i] = 'c'
				return string(w)
			}
		case 5: // two letters swapped
			if i+1 < len(w) && w[i] != w[i+1] && i+1 < len(w)-1 {
				w[i], w[i+1] = w[i+1], w[i]
				return string(w)
			}
		case 6: // a vowel dropped in a long name
			if len(w) > 6 && strings.ContainsRune("aeiou", rune(c)) && i+1 < len(w) {
				return string(w[:i]) + string(w[i+1:])
			}
		}
	}
	return name
}

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func aadhaarNumber(r *rand.Rand) string {
	body := fmt.Sprintf("%d%010d", 2+r.IntN(8), r.IntN(10_000_000_000))
	d, err := record.VerhoeffDigit(body)
	if err != nil {
		panic(err)
	}
	return body + string(d)
}

func phoneNumber(r *rand.Rand) string {
	return fmt.Sprintf("+254 7%02d %06d", r.IntN(100), r.IntN(1_000_000))
}

// person draws a patient, born with an exact date or an estimated year.
func person(r *rand.Rand) record.Patient {
	p := record.Patient{Sex: "female", FamilyName: pick(r, familyNames), Village: pick(r, villages), HomeClinic: "c"}
	if r.IntN(2) == 0 {
		p.Sex, p.GivenName = "male", pick(r, maleNames)
	} else {
		p.GivenName = pick(r, femaleNames)
	}
	year := 1950 + r.IntN(70)
	if r.IntN(2) == 0 {
		p.BirthDate = fmt.Sprintf("%d-%02d-%02d", year, 1+r.IntN(12), 1+r.IntN(28))
	} else {
		p.EstimatedBirthYear = year
	}
	if r.IntN(3) > 0 {
		p.Phone = phoneNumber(r)
	}
	return p
}

func year(p record.Patient) int {
	if p.BirthDate != "" {
		var y int
		fmt.Sscanf(p.BirthDate, "%d", &y)
		return y
	}
	return p.EstimatedBirthYear
}

// bornAbout sets p's birth to an estimated year, or an exact date in that
// year.
func bornAbout(r *rand.Rand, p *record.Patient, y int) {
	p.BirthDate, p.EstimatedBirthYear = "", 0
	if r.IntN(2) == 0 {
		p.BirthDate = fmt.Sprintf("%d-%02d-%02d", y, 1+r.IntN(12), 1+r.IntN(28))
	} else {
		p.EstimatedBirthYear = y
	}
}

// reregistered is the same patient registered again elsewhere: the phone
// may be missing, the birth date estimated where it was exact.
func reregistered(r *rand.Rand, p record.Patient) record.Patient {
	q := p
	q.Identifiers = nil
	if r.IntN(3) == 0 {
		q.Phone = ""
	}
	return q
}

func otherVillage(r *rand.Rand, v string) string {
	for {
		if o := pick(r, villages); o != v {
			return o
		}
	}
}

// labelledPairs draws n pairs of each category from seed.
func labelledPairs(seed uint64, n int) []pair {
	r := rand.New(rand.NewPCG(seed, 0x1dea))
	var out []pair
	add := func(cat string, same bool, a, b record.Patient) { out = append(out, pair{cat, same, a, b}) }
	for range n {
		// The same patient.
		a := person(r)
		b := reregistered(r, a)
		switch r.IntN(3) {
		case 0:
			b.GivenName = variant(r, a.GivenName)
		case 1:
			b.FamilyName = variant(r, a.FamilyName)
		default:
			b.GivenName, b.FamilyName = variant(r, a.GivenName), variant(r, a.FamilyName)
		}
		add("same: spelling variant", true, a, b)

		a = person(r)
		b = reregistered(r, a)
		b.GivenName, b.FamilyName = a.FamilyName, a.GivenName
		if r.IntN(2) == 0 {
			b.GivenName = variant(r, b.GivenName)
		}
		add("same: given and family swapped", true, a, b)

		a = person(r)
		a.BirthDate, a.EstimatedBirthYear = fmt.Sprintf("%d-%02d-15", year(a), 1+r.IntN(12)), 0
		b = reregistered(r, a)
		b.BirthDate, b.EstimatedBirthYear = "", year(a)+r.IntN(3)-1
		if r.IntN(2) == 0 {
			b.FamilyName = variant(r, a.FamilyName)
		}
		add("same: estimated vs exact birth", true, a, b)

		a = person(r)
		b = reregistered(r, a)
		b.Village = otherVillage(r, a.Village)
		if r.IntN(2) == 0 {
			b.GivenName = variant(r, a.GivenName)
		}
		if r.IntN(2) == 0 && b.BirthDate != "" {
			b.BirthDate, b.EstimatedBirthYear = "", year(a)+r.IntN(3)-1
		}
		add("same: different village", true, a, b)

		a = person(r)
		a.Identifiers = []record.Identifier{{System: record.SystemAadhaar, Value: aadhaarNumber(r)}}
		b = reregistered(r, a)
		b.Identifiers = a.Identifiers
		b.GivenName, b.FamilyName = variant(r, a.GivenName), variant(r, a.FamilyName)
		b.Village, b.Phone = otherVillage(r, a.Village), ""
		add("same: same identifier, names and village differ", true, a, b)

		// Different patients.
		a = person(r)
		b = person(r)
		b.FamilyName, b.Village = a.FamilyName, a.Village
		if r.IntN(3) > 0 {
			b.Phone = a.Phone
		}
		for b.GivenName == a.GivenName {
			b.GivenName = pick(r, append(slices.Clone(femaleNames), maleNames...))
		}
		if r.IntN(4) == 0 { // twins
			bornAbout(r, &b, year(a))
		} else {
			bornAbout(r, &b, year(a)+2+r.IntN(10))
		}
		add("different: siblings", false, a, b)

		a = person(r)
		b = person(r)
		b.FamilyName, b.Village, b.Phone = a.FamilyName, a.Village, a.Phone
		bornAbout(r, &b, year(a)+18+r.IntN(18))
		add("different: parent and child", false, a, b)

		a = person(r)
		b = reregistered(r, a)
		b.Village, b.Phone = otherVillage(r, a.Village), phoneNumber(r)
		bornAbout(r, &b, year(a)+[]int{-1, 1}[r.IntN(2)]*(3+r.IntN(20)))
		if r.IntN(2) == 0 {
			b.GivenName = variant(r, a.GivenName)
		}
		add("different: namesakes elsewhere", false, a, b)

		names := pick(r, pairedNames)
		a = person(r)
		a.Sex, a.GivenName = "female", names[0]
		b = reregistered(r, a)
		b.Sex, b.GivenName = "male", names[1]
		add("different: relatives of the other sex", false, a, b)

		a = person(r)
		a.Identifiers = []record.Identifier{{System: record.SystemAadhaar, Value: aadhaarNumber(r)}}
		b = reregistered(r, a)
		b.Identifiers = []record.Identifier{{System: record.SystemAadhaar, Value: aadhaarNumber(r)}}
		b.Phone = phoneNumber(r)
		add("different: namesakes with other Aadhaar numbers", false, a, b)

		add("different: unrelated", false, person(r), person(r))
	}
	return out
}
