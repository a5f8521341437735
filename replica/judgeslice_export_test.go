package replica

// SetAfterSlice has f called each time a receive has checked and applied
// a slice of a chart's changes (nil: no longer). It is not safe to call
// while a receive runs.
func SetAfterSlice(f func()) { afterSlice = f }

// JudgeSliceOps is the most operations of a chart's changes a receive
// holds decoded at once (past one change).
const JudgeSliceOps = judgeSliceOps
