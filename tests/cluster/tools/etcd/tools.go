//go:build tools

// Package tools pins etcd for the real-Knative backend.
package tools

import _ "go.etcd.io/etcd/server/v3"
