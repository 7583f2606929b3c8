//go:build tools

// Package tools pins the Kubernetes components that the test control plane runs: kube-apiserver for
// both backends, kube-controller-manager and kube-scheduler for the real-Knative one.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
