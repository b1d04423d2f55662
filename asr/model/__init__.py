"""The acoustic model (one class, any recurrent cell), its recurrence, the remedies for vanishing gradients,
and the gradient instruments that measure them."""
