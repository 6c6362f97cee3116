"""Packaging for billcore and its in-tree payment modules.

The core's templates live in the top-level ``templates/`` folder of the source tree; the wheel carries
them inside the package as ``billcore/templates`` so an installed billcore finds them the same way.
"""
from setuptools import find_packages, setup

setup(
    name="billcore",
    version="0.1.0",
    description="A billing core for hosting providers with pluggable payment modules",
    python_requires=">=3.10",
    packages=(
        find_packages(include=["billcore", "billcore.*"])
        + ["billcore.templates"]
        + find_packages(where="plugins", include=["pmrobokassa", "pmrobokassa.*", "pmtemplate", "pmtemplate.*"])
    ),
    package_dir={
        "billcore.templates": "templates",
        "pmrobokassa": "plugins/pmrobokassa",
        "pmtemplate": "plugins/pmtemplate",
    },
    package_data={
        "billcore": ["static/**/*", "translations/*/LC_MESSAGES/*.po", "migrations/env.py",
                     "migrations/script.py.mako", "skeleton/*.tmpl", "skeleton/**/*.py"],
        "billcore.templates": ["**/*.html"],
        "pmrobokassa": ["templates/**/*", "static/**/*"],
        "pmtemplate": ["templates/**/*", "static/**/*"],
    },
    install_requires=[
        "Flask>=3.0,<4",
        "pluggy>=1.3,<2",
        "SQLAlchemy>=2.0.25,<2.1",
        "Flask-SQLAlchemy>=3.1,<4",
        "WTForms>=3.1,<3.4",
        "Flask-WTF>=1.2,<2",
        "Flask-Login>=0.6.3,<0.7",
        "alembic>=1.13,<2",
        "Flask-Babel>=4.0,<5",
        "Babel>=2.14,<3",
        "cryptography>=42,<50",
        "gunicorn>=22,<28",
        "PyJWT>=2.8,<3",
        "requests>=2.31,<3",
        "urllib3>=2.0,<3",  # pmrobokassa's calls to Robokassa
        "certifi>=2023.7.22",
        "psycopg[binary]>=3.1,<4",
        "email-validator>=2.0,<3",
        "Flask-Limiter>=3.8,<5",
        "redis>=5,<9",
        "zxcvbn>=4.4,<5",
        "flask-smorest>=0.46,<0.48",
        "marshmallow>=3.22,<5",
        "standardwebhooks>=1.0,<2",
        "pycryptodome>=3.19,<4",  # RIPEMD-160 for pmrobokassa (OpenSSL 3 builds often lack it)
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-flask>=1.3,<2",
            "pytest-xdist>=3.5,<4",
            "playwright>=1.45,<2",
            "hypothesis>=6.100,<7",
            "build>=1.0,<2",
            "schemathesis>=4.0,<5",
            "aiosmtpd>=1.4,<2",
            "ruff>=0.17,<0.18",
            "mypy>=2.4,<3",
            "types-requests>=2.31,<3",
        ],
    },
    entry_points={
        # `billcore COMMAND`: every `flask --app billcore COMMAND`, from any folder (see billcore.cli.main)
        "console_scripts": ["billcore = billcore.cli:main"],
        "billcore.paymethods": [
            "pmrobokassa = pmrobokassa",
            "pmtemplate = pmtemplate",
        ],
    },
)
