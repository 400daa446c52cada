// Command kubectl is kubectl at the release go.mod pins (k8s.io/kubectl v0.33.x, every k8s.io
// module at that one release), built by scripts/kube-control-plane for the conformance suite
// (tests/test_kube_conformance.py), which drives it against the newer control plane to see what
// version skew does. It runs kubectl's own root command the way kubectl's main package in
// k8s.io/kubernetes/cmd/kubectl does; the version it reports comes from -ldflags -X
// k8s.io/component-base/version.gitVersion=... set by the build.
package main

import (
	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// the client-go credential plugins kubectl registers (oidc; exec is built in)
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

func main() {
	root := cmd.NewDefaultKubectlCommand()
	// RunNoErrOutput leaves printing the error to CheckErr, which formats it as kubectl does
	// (and picks the exit code from the error).
	if err := cli.RunNoErrOutput(root); err != nil {
		util.CheckErr(err)
	}
}
