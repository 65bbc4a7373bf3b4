"""The provider seam: what we need from an upstream SMS-activation provider.

`base` defines the interface and its typed results, `errors` the failures, `grizzly` the
GrizzlySMS HTTP client and `sandbox` a self-contained provider for trying the product.
Nothing in this package knows about our models.
"""
