"""Packaging the nbdev 2 way: every field comes from settings.ini."""
from configparser import ConfigParser

import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read('settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

licenses = {'apache2': 'Apache-2.0'}
statuses = ['Planning', 'Pre-Alpha', 'Alpha', 'Beta', 'Production/Stable', 'Mature', 'Inactive']
py_versions = ['3.10', '3.11', '3.12']
min_python = cfg['min_python']

# Extras: serve, export, book and corpus each bring one optional part; dev is all plus the tests.
extras = {name: cfg.get(f'{name}_requirements', '').split() for name in ('serve', 'export', 'book', 'corpus')}
extras['dev'] = sorted({r for rs in extras.values() for r in rs} | set(cfg.get('dev_requirements', '').split()))

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    url=cfg['git_url'],
    license=licenses[cfg['license']],
    keywords=cfg['keywords'].split(),
    classifiers=[
        f"Development Status :: {int(cfg['status']) + 1} - {statuses[int(cfg['status'])]}",
        f"Intended Audience :: {cfg['audience']}",
        f"Natural Language :: {cfg['language']}",
    ] + [f'Programming Language :: Python :: {v}' for v in py_versions[py_versions.index(min_python):]],
    packages=setuptools.find_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*']),
    include_package_data=True,
    # the decontamination fingerprint (chapter 5i) is data, not a module
    package_data={cfg['lib_name'] + '.data': ['contamination.fp']},
    python_requires=f'>={min_python}',
    install_requires=cfg.get('requirements', '').split(),
    extras_require=extras,
    entry_points={
        'console_scripts': cfg.get('console_scripts', '').split(),
        'nbdev': [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)
