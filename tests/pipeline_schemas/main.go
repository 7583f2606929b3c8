// Command tekton-validate decodes Tekton YAML with tektoncd/pipeline's own Go types, rejecting unknown
// fields, and runs the types' Validate methods, as the Tekton admission webhook would.
//
// Usage: tekton-validate FILE... ; prints one line per document and exits 1 if any is invalid.
package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	v1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	yamlutil "k8s.io/apimachinery/pkg/util/yaml"
	"knative.dev/pkg/apis"
	"sigs.k8s.io/yaml"
)

// strictOnly holds Kubernetes objects that are only decoded strictly (no Validate method here).
type strictOnly struct{ obj any }

func (strictOnly) Validate(context.Context) *apis.FieldError { return nil }

type validatable interface {
	Validate(ctx context.Context) *apis.FieldError
}

func decode(doc []byte) (validatable, string, error) {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return nil, "", err
	}
	id := meta.APIVersion + "/" + meta.Kind
	var obj validatable
	switch id {
	case "tekton.dev/v1/Task":
		obj = &v1.Task{}
	case "tekton.dev/v1/Pipeline":
		obj = &v1.Pipeline{}
	case "tekton.dev/v1/PipelineRun":
		obj = &v1.PipelineRun{}
	case "tekton.dev/v1/TaskRun":
		obj = &v1.TaskRun{}
	case "v1/ServiceAccount":
		return strictly(doc, id, &corev1.ServiceAccount{})
	case "rbac.authorization.k8s.io/v1/Role":
		return strictly(doc, id, &rbacv1.Role{})
	case "rbac.authorization.k8s.io/v1/RoleBinding":
		return strictly(doc, id, &rbacv1.RoleBinding{})
	default:
		return nil, id, nil
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, id, err
	}
	// The API server names a generateName object before admission validates it.
	if m, ok := obj.(metav1.Object); ok && m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(m.GetGenerateName() + "x")
	}
	return obj, id, nil
}

func strictly(doc []byte, id string, obj any) (validatable, string, error) {
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, id, err
	}
	return strictOnly{obj}, id, nil
}

func main() {
	failed := false
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Printf("%s: %v\n", path, err)
			failed = true
			continue
		}
		reader := yamlutil.NewYAMLReader(bufioReader(data))
		for i := 0; ; i++ {
			doc, err := reader.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fmt.Printf("%s#%d: %v\n", path, i, err)
				failed = true
				break
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			obj, id, err := decode(doc)
			switch {
			case err != nil:
				fmt.Printf("%s#%d %s: INVALID: %v\n", path, i, id, err)
				failed = true
			case obj == nil:
				fmt.Printf("%s#%d %s: skipped\n", path, i, id)
			default:
				if ferr := obj.Validate(context.Background()); ferr != nil && ferr.Filter(apis.ErrorLevel) != nil {
					fmt.Printf("%s#%d %s: INVALID: %s\n", path, i, id, strings.ReplaceAll(ferr.Filter(apis.ErrorLevel).Error(), "\n", "; "))
					failed = true
				} else {
					fmt.Printf("%s#%d %s: valid\n", path, i, id)
				}
			}
		}
	}
	if failed {
		os.Exit(1)
	}
}
