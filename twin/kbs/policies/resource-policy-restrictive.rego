# Resource policy of the Trustee twin, Restricted profile. A resource is released only to an
# attester whose token has at least one submod, and in no submod (cpu0, gpu0, ...) is one of the
# claims executables, configuration or hardware outside the affirming values 2..31 (AR4SI:
# 0/1 say nothing, 32 and up are warnings or worse). A claim the token does not carry is not
# held against it. The submods' ear.status is not read: a "warning" from file-system, say, does
# not refuse.
package policy

import rego.v1

default allow := false

checked_claims := ["executables", "configuration", "hardware"]

allow if {
	count(input.submods) > 0
	not some_claim_not_affirming
}

some_claim_not_affirming if {
	some submod in input.submods
	some claim in checked_claims
	value := submod["ear.trustworthiness-vector"][claim]
	not affirming(value)
}

affirming(value) if {
	value >= 2
	value <= 31
}
