"""``pwbus tariff``: an Octopus tariff as a Tesla ``tariff_content_v2``, checked, then uploaded."""
