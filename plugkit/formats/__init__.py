"""The batch formats: what data looks like between the core and a family (docs/plugins.md).

This package is part of the plugin contract, beside plugkit.family: families import it to read
their batches and to write their samples, and the core (plugkit.data loading, plugkit.sampling
writing) uses it to turn the user's data into batches and samples back into the user's data.
It imports nothing of the core above it.

    tabular   tables as float rows of spans (mode-specific numeric offsets, one-hot categories)
    text      lines as int64 tokens, long lines as char-rnn windows
    sequence  real-valued windows standardized per feature (bounded ones kept in bounds)
    codec     one encode / decode for all four modalities (images are already [0, 1] floats)
"""
