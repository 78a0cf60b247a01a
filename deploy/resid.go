package deploy

import "sigs.k8s.io/kustomize/kyaml/resid"

func resIDDeployment() resid.ResId {
	return resid.NewResIdWithNamespace(resid.NewGvk("apps", "v1", "Deployment"), Name, Namespace)
}
