"""gpu-check step 3: the line of a .pth file that lets the check's venv see this Python's packages.

A venv made with --system-site-packages sees only the *base* interpreter's site-packages. When
the Python that has torch is itself a venv (or keeps packages in its user site), its torch would
be invisible, so the driver writes this line into the new venv's site-packages as
_plugkit_gpu_check_base.pth: site.py runs it at start-up, and addsitedir also runs the .pth
files of the folders it adds.

Usage: python base_site.py > VENV_SITE_PACKAGES/_plugkit_gpu_check_base.pth
"""
import os
import site
import sysconfig

scheme = sysconfig.get_paths()
paths = [*site.getsitepackages(), scheme["purelib"], scheme["platlib"]]
if site.ENABLE_USER_SITE:
    paths.append(site.getusersitepackages())
paths = [p for i, p in enumerate(paths) if os.path.isdir(p) and p not in paths[:i]]
# one line, exec'd by site.py in a function scope: no comprehension (it could not see `site`)
print(f"import site; list(map(site.addsitedir, {paths!r}))")
