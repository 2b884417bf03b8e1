"""Store kinds: one package per kind (stores/<kind>/), each with its spec model, its record
(kind.py: every capability the layers need, see stores/base.py) and its templates; the registry
(stores/registry.py) is how the config, the components and the renderers reach them."""
