"""The complete database schema: imports every table module so ``Base.metadata`` is whole.

Used by Alembic, the migration drift check and tests. Lives above the domains on purpose.
"""

from stockade.airgap import models as airgap_models
from stockade.audit import downloads_models
from stockade.audit import models as audit_models
from stockade.auth import models as auth_models
from stockade.channels import models as channel_models
from stockade.db import schedules as schedule_models
from stockade.db.base import Base
from stockade.mirroring import models as mirror_models
from stockade.policies import models as policy_models
from stockade.scanning import models as scanning_models
from stockade.search import models as search_models
from stockade.signing import models as signing_models
from stockade.storage import models as storage_models
from stockade.vulns import models as vuln_models

metadata = Base.metadata

__all__ = [
    "Base",
    "airgap_models",
    "audit_models",
    "auth_models",
    "channel_models",
    "downloads_models",
    "metadata",
    "mirror_models",
    "policy_models",
    "scanning_models",
    "schedule_models",
    "search_models",
    "signing_models",
    "storage_models",
    "vuln_models",
]
