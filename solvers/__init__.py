"""optscribe's model core: the contract, its expression language, checks, backends and
explanations. It knows nothing of HTTP or LLMs."""
