# Resource policy of the Trustee twin, Permissive profile: every request the resource plugin
# serves is allowed once the attester holds a token, whatever the token says.
package policy

import rego.v1

default allow := false

allow if {
	data.plugin == "resource"
}
