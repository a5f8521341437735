package web

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/chartsync/chartsync/record"
)

// TestTimesInTheDevicesZone: the chart page shows times in the device's
// time zone (Config.Location, time.Local by default), not in UTC: a
// registration at 09:00 UTC reads 12:00 in East Africa Time.
func TestTimesInTheDevicesZone(t *testing.T) {
	eat := time.FixedZone("EAT", 3*60*60)
	for _, tc := range []struct {
		name string
		loc  *time.Location
		want string
	}{{"East Africa Time", eat, "2026-03-02 12:00"}, {"UTC", time.UTC, "2026-03-02 09:00"}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(c *Config) { c.Location = tc.loc })
			id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", BirthDate: "1990-01-01", Village: "Kamuga"})
			c := f.client()
			c.login(record.RoleClinician)
			code, page := c.get("/chart/" + id)
			assert.Equal(t, http.StatusOK, code)
			assert.Contains(t, page, tc.want, "the registration's time, in %s", tc.loc)
		})
	}
}
