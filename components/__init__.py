"""The program's ComponentResources. Importing any of them defers the provider SDKs' package
initialisation (components/deferred_import.py): a stack without DNS never loads the Cloudflare
SDK, and every stack loads only the modules of the Docker, Hetzner and Cloudflare SDKs it uses."""

from components.deferred_import import defer_init

for _sdk in ("pulumi_cloudflare", "pulumi_docker", "pulumi_hcloud"):
    defer_init(_sdk)
