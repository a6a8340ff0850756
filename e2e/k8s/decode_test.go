package k8s

import (
	"strings"
	"testing"
)

func TestDecodeAllIsStrict(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr string
	}{
		{
			name: "known fields",
			doc:  "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n    - port: 2525\n",
		},
		{
			name:    "unknown field",
			doc:     "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  portz:\n    - port: 2525\n",
			wantErr: `unknown field "portz"`,
		},
		{
			name:    "field misplaced",
			doc:     "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          readOnlyRootFilesystem: true\n",
			wantErr: "unknown field",
		},
		{
			name:    "unknown kind",
			doc:     "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n",
			wantErr: "unexpected kind v1/Pod",
		},
		{
			name:    "defined twice",
			doc:     "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: s\n",
			wantErr: "defined twice",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := decodeAll([]byte(tc.doc))
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}
