"""Tesla's cloud (Owner API and Fleet API) for one account: light (requests only).

- :mod:`.tokens`: the OAuth tokens and their 0600 file (single-use refresh tokens);
- :mod:`.transport`: one JSON request, every failure translated into ``CloudError``;
- :mod:`.client`: :class:`TeslaCloud`, the endpoints (products, site_info, backup,
  operation, command, device_command), refreshing and retrying on an expired token;
- :mod:`.authorized`: the paired keys ("authorized clients") as the ``command`` endpoint
  registers and lists them.
"""

from powerwall_bus.shared.tesla_cloud.client import EnergySite, TeslaCloud, pick_site
from powerwall_bus.shared.tesla_cloud.tokens import TOKEN_FILE, CloudTokens, TokenStore

__all__ = ["TOKEN_FILE", "CloudTokens", "EnergySite", "TeslaCloud", "TokenStore", "pick_site"]
