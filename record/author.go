package record

import "slices"

// Role is what a user does at a clinic. It is recorded on every change.
type Role string

// Roles.
const (
	RoleClinician             Role = "clinician"
	RoleNurse                 Role = "nurse"
	RoleLabTechnician         Role = "lab-technician"
	RoleRegistrationClerk     Role = "registration-clerk"
	RoleCommunityHealthWorker Role = "community-health-worker"
	RoleAdministrator         Role = "administrator"
)

var roles = []Role{RoleClinician, RoleNurse, RoleLabTechnician, RoleRegistrationClerk, RoleCommunityHealthWorker, RoleAdministrator}

// Valid reports whether r is one of the defined roles.
func (r Role) Valid() bool { return slices.Contains(roles, r) }

// Author is who makes a change: a user, in a role, on a device. Every write
// and every history entry carries one.
type Author struct {
	UserID string `json:"user"`
	Name   string `json:"name,omitempty"`
	Role   Role   `json:"role"`
	Device string `json:"device,omitempty"`
}

// Validate checks that an author names a user and a known role.
func (a Author) Validate() error {
	if a.UserID == "" {
		return invalid("author.user", "is required")
	}
	for _, c := range []struct{ name, v string }{{"author.user", a.UserID}, {"author.name", a.Name}, {"author.device", a.Device}} {
		if err := text(128)(c.v); err != nil {
			return invalid(c.name, "%v", err)
		}
	}
	if !a.Role.Valid() {
		return invalid("author.role", "%q is not a role", a.Role)
	}
	return nil
}

// String names the author for a person: "Amina Okafor (nurse)".
func (a Author) String() string {
	n := a.Name
	if n == "" {
		n = a.UserID
	}
	return n + " (" + string(a.Role) + ")"
}
