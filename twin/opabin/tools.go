//go:build tools

// Package tools pins the Rego engine the twin's KBS evaluates its policies with; never compiled.
package tools

import _ "github.com/open-policy-agent/opa"
