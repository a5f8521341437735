package postgres

// OpenWrapped is Open with every connection the pool dials wrapped, for
// tests that make the network fail.
var OpenWrapped = open
