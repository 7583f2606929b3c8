//go:build tools

// Pins actionlint, which tests/ship/test_pipelines.py builds from this module to lint the e2e workflow and the
// local action it uses.
package main

import _ "github.com/rhysd/actionlint/cmd/actionlint"
