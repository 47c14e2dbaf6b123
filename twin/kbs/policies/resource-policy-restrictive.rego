# Resource policy of the Trustee twin, Restricted profile: a resource is released only to an
# attester whose token has at least one submod and every submod (cpu0, gpu0, ...) affirming.
package policy

import rego.v1

default allow := false

allow if {
	count(input.submods) > 0
	not some_submod_not_affirming
}

some_submod_not_affirming if {
	some submod in input.submods
	submod["ear.status"] != "affirming"
}
