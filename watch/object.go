// Package watch feeds the bridge from the API server: Events through
// client-go informers, and a slim cache of the objects they are about so that
// owner chains resolve without a GET per event.
package watch

import "time"

// OwnerRef is the part of a metav1.OwnerReference the owner chain needs.
type OwnerRef struct {
	APIVersion string `json:"apiVersion,omitempty"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	UID        string `json:"uid"`
	Controller bool   `json:"controller,omitempty"`
}

// Object is what the slim cache keeps per UID: enough to walk owner chains
// and notice new rollouts, nothing else.
type Object struct {
	UID        string     `json:"uid"`
	APIVersion string     `json:"apiVersion,omitempty"`
	Kind       string     `json:"kind"`
	Namespace  string     `json:"namespace,omitempty"`
	Name       string     `json:"name"`
	Owners     []OwnerRef `json:"owners,omitempty"`
	Generation int64      `json:"generation,omitempty"`
	// Traceparent is the W3C traceparent annotation of a root object, if any.
	Traceparent string `json:"traceparent,omitempty"`
	// Deleted is when the object was seen deleted (a tombstone); zero while it lives.
	Deleted time.Time `json:"deleted,omitzero"`
}
