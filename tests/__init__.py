"""neuronscope's tests, laid out like the package (docs/design.md, section 7)."""
