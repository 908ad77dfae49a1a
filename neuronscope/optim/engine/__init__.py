"""How a render computes, as fast as it can: everything here changes speed, never the function.

* :mod:`.fast_copy`: a faster copy of the model (BatchNorm folded, fused activations, channels-last, bfloat16);
* :mod:`.fast_conv`: convolutions whose backward computes only the input gradient;
* :mod:`.stages`: which network runs each step (precision stages, taps, ReLU redirection);
* :mod:`.row_split`: a batch's rows run on parallel CPU threads;
* :mod:`.adam`: Adam without ``torch.optim``'s import cost;
* :mod:`.heap`: glibc keeps freed memory while rendering.
"""
