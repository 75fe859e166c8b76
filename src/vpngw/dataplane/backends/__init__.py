"""Network backends: where a gateway's namespace, addresses and routes come from.

``base`` is the interface the core uses; ``lab`` and ``host`` implement it and are chosen
by the CLI (``vpngw serve --backend``, ``vpngw agent --backend``).
"""
