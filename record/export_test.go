package record

// CheckerCounts returns how many changes c judged from their operations
// (fast) and how many it left to CheckChange (slow).
func CheckerCounts(c *Checker) (fast, slow int) { return c.nfast, c.nslow }

// Substance is substance, the name two prescriptions of one drug share.
var Substance = substance
