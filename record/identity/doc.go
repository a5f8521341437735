// Package identity finds patients: the search keys a store indexes a
// chart under, the parsing and scoring of what someone types to find a
// patient, and the comparison of two registrations that finds likely
// duplicates, each with the reasons a clerk reads. It does no I/O: a
// store (package replica and its Store implementations) keeps the keys
// and answers the lookups.
//
// # Usage
//
// Indexing: when a chart's demographics change, a store replaces the
// chart's keys with Keys(chart.Patient()).
//
// Searching: q := ParseQuery(text); the store finds, for each of
// q.Terms, the charts under any of its Lookups (an exact key, or a
// prefix: a range scan of sorted keys), keeps the charts every term
// found, scores each with q.Match(patient), and lists them with Rank.
// A store that cannot intersect may look up q.Lookups() and let Match
// drop what does not match every term.
//
// Duplicates: before saving a registration, or for an existing chart,
// the store finds the charts under DuplicateKeys(p) and gives them to
// Duplicates(p, selfID, charts), which returns those at or above
// Threshold, each with its Evidence (same identifier, similar name in
// either order, same birth year or a year apart where one is estimated,
// same village, same phone, and the evidence against: other identifier,
// other birth year, other sex).
//
// # Matching names
//
// Names are folded (Fold: case, Latin accents and apostrophes dropped;
// other scripts kept) and split into words. Spelling variants are caught
// by a phonetic key (Phonetic, written for the names of East and West
// Africa and South Asia this library is used with: Mohammed, Muhammad
// and Mohamed share one) and, for duplicates, by the Jaro-Winkler
// similarity of the words, pairing each word of the shorter name with a
// word of the other in whichever order fits best (so swapped given and
// family names, and a missing middle name, still match) and judging the
// names by their weakest pair.
//
// On the labelled synthetic pairs of this package's tests (275 per seed:
// 125 re-registrations of one patient with spelling variants, swapped
// names, estimated against exact birth dates, other villages or only an
// identifier in common; 150 different people: siblings and twins,
// parents and children, namesakes elsewhere, relatives of the other sex,
// namesakes with other Aadhaar numbers, strangers) Threshold gives a
// precision of 1.0 and a recall of 0.99 on the seed not used to choose
// the weights, and every true duplicate shares a DuplicateKeys key.
//
// # Caveats
//
// The test pairs are synthetic; real registers hold harder cases (two
// women of one name, age and village are told apart by nothing here),
// and the weights should be checked against a clinic's own data. A
// misspelling that changes a word's phonetic key and is not a prefix of
// it (Njoroge typed Njoroje) is not found by search, and weighs as a
// different name in a duplicate check unless other evidence (an
// identifier, a phone) carries it. A phonetic key common to many names
// ("mr" for Mary and Meera) makes DuplicateKeys find many charts, each
// compared in microseconds.
package identity
