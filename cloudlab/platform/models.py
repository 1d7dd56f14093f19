"""The service models as a matrix: for each layer of a running app, who manages it.

The note's first picture is by consumer ("IaaS: IT staff, PaaS: developers, SaaS:
end users"); the precise one is this matrix, the one NIST SP 800-145 describes in
words: IaaS gives the consumer processing, storage and networks on which they run
an OS and applications of their own; PaaS gives them a platform for applications
they write, without managing the OS; SaaS gives them only the application's use.
"""

LAYERS = ("application", "data", "runtime", "middleware", "os", "virtualization", "servers", "storage",
          "networking")
MODELS = ("on-premise", "iaas", "paas", "saas")
YOU, PROVIDER = "you", "provider"

# how many layers, from the top, are still yours in each model
_YOURS = {"on-premise": len(LAYERS), "iaas": 5, "paas": 2, "saas": 0}


def reference():
    """The usual who-manages-what matrix: ``{model: {layer: "you" | "provider"}}`` (for grading)."""
    return {model: {layer: YOU if i < _YOURS[model] else PROVIDER for i, layer in enumerate(LAYERS)}
            for model in MODELS}


def matrix_template():
    """An empty matrix to fill in: ``{model: {layer: None}}``; put ``"you"`` or ``"provider"`` in each cell."""
    return {model: {layer: None for layer in LAYERS} for model in MODELS}


def wrong_cells(answer):
    """The ``(model, layer)`` cells of ``answer`` that differ from :func:`reference` (all of them when unreadable)."""
    expected = reference()
    wrong = []
    for model in MODELS:
        column = answer.get(model) if isinstance(answer, dict) else None
        for layer in LAYERS:
            given = column.get(layer) if isinstance(column, dict) else None
            if not isinstance(given, str) or given.strip().lower() != expected[model][layer]:
                wrong.append((model, layer))
    return wrong
