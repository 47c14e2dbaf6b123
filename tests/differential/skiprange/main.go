// Command skiprange answers, for each JSON line {"version": ..., "range": ...} on stdin, whether
// blang/semver/v4 puts the version in the range, as OLM reads a bundle's olm.skipRange:
// operator-lifecycle-manager pkg/controller/registry/resolver/cache/operators.go parses it with
// semver.ParseRange (a range that does not parse is no range) and predicates.go
// SkipRangeIncludesPredicate applies it to the installed CSV's spec.version, which
// operator-framework/api pkg/lib/version (OperatorVersion.UnmarshalJSON) reads with ParseTolerant.
//
// Each answer is one JSON line: {"in": true|false}, or {"error": "range: ..."} / {"error": "version: ..."}.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/blang/semver/v4"
)

type query struct {
	Version string `json:"version"`
	Range   string `json:"range"`
}

type answer struct {
	In    *bool  `json:"in,omitempty"`
	Error string `json:"error,omitempty"`
}

func judge(q query) answer {
	r, err := semver.ParseRange(q.Range)
	if err != nil {
		return answer{Error: "range: " + err.Error()}
	}
	v, err := semver.ParseTolerant(q.Version)
	if err != nil {
		return answer{Error: "version: " + err.Error()}
	}
	in := r(v)
	return answer{In: &in}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	for in.Scan() {
		var q query
		if err := json.Unmarshal(in.Bytes(), &q); err != nil {
			fmt.Fprintln(os.Stderr, "skiprange: bad input line:", err)
			os.Exit(2)
		}
		if err := enc.Encode(judge(q)); err != nil {
			fmt.Fprintln(os.Stderr, "skiprange:", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "skiprange:", err)
		os.Exit(1)
	}
}
