package httpsync

import (
	"github.com/chartsync/chartsync/replica/gate"
)

// AccessLog records which device (and, for writes, which user) read or
// wrote which chart: gate.AccessLog, which the Handler's gate records
// (Config.AccessLog). *audit.Log is one; Append must be durable when it
// returns nil and safe for concurrent use.
type AccessLog = gate.AccessLog

// sender is the device as the cloud's gate knows it: the channel's
// certificate authenticated it.
func (d Device) sender() gate.Sender {
	return gate.Sender{Replica: d.Replica, Clinic: d.Clinic, Name: d.Name}
}
