"""Our attacks inside other attack libraries, for code already written against them.

* :mod:`strattack.compat.torchattacks`: ``StrAttack``, ``StrAttackLinf`` and ``ADMM`` as
  ``torchattacks.attack.Attack`` subclasses (``pip install "strattack[torchattacks]"``, or
  ``pip install --no-deps torchattacks`` where torchvision cannot be installed).
* :mod:`strattack.compat.foolbox`: ``StrAttack`` and ``ADMM`` as foolbox 3
  ``MinimizationAttack`` subclasses (``pip install "strattack[foolbox]"``).

Each adapter only translates the calling convention and delegates to
:func:`~strattack.attacks.str_attack`, :func:`~strattack.attacks.str_attack_linf` or
:func:`~strattack.attacks.admm_attack`, so its output is theirs. The modules import their
library when imported themselves; this package imports neither, and nothing in the core imports
this package (an import-linter contract in pyproject.toml).
"""
