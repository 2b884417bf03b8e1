"""The program's ComponentResources. Importing any of them defers the Cloudflare SDK's package
initialisation (components/deferred_import.py): a stack without DNS never loads it, and one
with DNS loads the few modules it uses."""

from components.deferred_import import defer_init

defer_init("pulumi_cloudflare")
