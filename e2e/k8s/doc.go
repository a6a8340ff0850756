// Package k8s tests the Kubernetes manifests of deploy/kubernetes without a
// cluster: each overlay is built with the kustomize library, decoded
// strictly into the Kubernetes API types and checked against the binary's
// configuration, and the containers it describes are started as processes on
// loopback. It is a module of its own so that the Kubernetes libraries stay
// out of sealgate's.
package k8s
