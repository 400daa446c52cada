"""A Kubernetes API test server: enough of kube-apiserver, plus a small controller, that the real
`kubernetes` client and the real `kubectl` work against it on 127.0.0.1. Tests only; see README.md.
"""
