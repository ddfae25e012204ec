"""Library objects at the config schema's defaults (the schema is the only place a
default lives; tests vary them with ``dataclasses.replace``)."""
from equivox.config import default_config
from equivox.origins import OriginParams
from equivox.views import ViewParams

CONFIG = default_config()
VIEW_PARAMS = ViewParams.from_config(CONFIG)
IMAGE_PARAMS = VIEW_PARAMS.image
ORIGIN_PARAMS = OriginParams(**CONFIG["origins"])
