"""Model builders: Llama language models (Tables 1-2)."""
