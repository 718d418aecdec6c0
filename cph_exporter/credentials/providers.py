"""Where the exporter's AK/SK come from: explicit values, the environment, files, the profile.

Every provider caches what it read; `invalidate()` makes it read again, which is what the
exporter does when the API rejects keys that used to work (rotation). Error messages name
sources, variables and paths, never a secret value.
"""

from __future__ import annotations

import configparser
import logging
import os
import threading
from collections.abc import Mapping
from typing import Protocol

from cph_exporter.credentials.values import Credentials

log = logging.getLogger(__name__)

ENV_AK = "HUAWEICLOUD_SDK_AK"
ENV_SK = "HUAWEICLOUD_SDK_SK"
ENV_SECURITY_TOKEN = "HUAWEICLOUD_SDK_SECURITY_TOKEN"
ENV_CREDENTIALS_FILE = "HUAWEICLOUD_SDK_CREDENTIALS_FILE"
ENV_IAM_ENDPOINT = "HUAWEICLOUD_SDK_IAM_ENDPOINT"
FILE_SUFFIX = "_FILE"


# The SDK's profile file: an INI file whose section is the lower-cased credential type;
# "basic" holds the project-scoped keys that regional services such as CPH use.
PROFILE_DIR = ".huaweicloud"
PROFILE_NAME = "credentials"
PROFILE_SECTION = "basic"


class CredentialError(Exception):
    """A source failed; the message says which and why, never with a secret value in it."""


class CredentialsNotFound(CredentialError):
    """A source holds no credentials at all (not configured); a chain moves on to the next.

    Any other CredentialError means the source is configured but broken, and a chain stops
    there rather than silently use another identity.
    """


class CredentialProvider(Protocol):
    def get(self) -> Credentials:
        """The current credentials; cheap after the first call (cached)."""
        ...

    def invalidate(self) -> None:
        """The API rejected the credentials: read the source again on the next get()."""
        ...

    def describe(self) -> str:
        """A name of the source that is safe to log."""
        ...


class CachedProvider:
    """Reads its source once and keeps the result until invalidated."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cached: Credentials | None = None

    def _load(self) -> Credentials:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError

    def get(self) -> Credentials:
        with self._lock:
            if self._cached is None:
                self._cached = self._load()
            return self._cached

    def invalidate(self) -> None:
        with self._lock:
            self._cached = None


class StaticCredentials(CachedProvider):
    """Credentials given explicitly (flags or config file)."""

    def __init__(self, creds: Credentials, description: str = "explicit configuration") -> None:
        super().__init__()
        self._creds = creds
        self._description = description

    def describe(self) -> str:
        return self._description

    def _load(self) -> Credentials:
        if not self._creds.access_key or not self._creds.secret_key:
            raise CredentialError(f"{self._description}: access key or secret key is empty")
        return self._creds


def _read_secret_file(variable: str, path: str) -> str:
    """Stripped content of a Docker/Kubernetes secret file named by `variable`."""
    try:
        with open(path, encoding="utf-8") as handle:
            value = handle.read().strip()
    except UnicodeDecodeError:
        raise CredentialError(
            f"environment: file {path!r} named by {variable} is not UTF-8 text"
        ) from None
    except OSError as exc:
        raise CredentialError(
            f"environment: cannot read file {path!r} named by {variable}: "
            f"{exc.strerror or type(exc).__name__}"
        ) from None
    if not value:
        raise CredentialError(f"environment: file {path!r} named by {variable} is empty")
    return value


class EnvCredentials(CachedProvider):
    """`HUAWEICLOUD_SDK_AK`/`_SK`/`_SECURITY_TOKEN`, each also as a `*_FILE` variant.

    Empty variables count as unset, as in the SDK.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        super().__init__()
        self._environ = environ

    def describe(self) -> str:
        return "environment"

    def _value(self, name: str) -> str | None:
        file_name = name + FILE_SUFFIX
        direct = self._environ.get(name) or None
        path = self._environ.get(file_name) or None
        if direct is not None and path is not None:
            # Which one would win is a guess; refuse rather than guess.
            raise CredentialError(f"environment: both {name} and {file_name} are set; set one")
        if path is not None:
            return _read_secret_file(file_name, path)
        return direct

    def _load(self) -> Credentials:
        ak = self._value(ENV_AK)
        sk = self._value(ENV_SK)
        token = self._value(ENV_SECURITY_TOKEN)
        if ak is None and sk is None:
            if token is not None:
                raise CredentialError(
                    f"environment: {ENV_SECURITY_TOKEN} is set without {ENV_AK} and {ENV_SK}"
                )
            raise CredentialsNotFound(f"environment: {ENV_AK} and {ENV_SK} are not set")
        if ak is None or sk is None:
            missing = ENV_AK if ak is None else ENV_SK
            raise CredentialError(
                f"environment: {missing} (or {missing}{FILE_SUFFIX}) is not set, the other key is"
            )
        return Credentials(access_key=ak, secret_key=sk, security_token=token)


def default_profile_path(environ: Mapping[str, str]) -> tuple[str | None, bool]:
    """The SDK's profile path and whether it was named explicitly.

    An explicitly named file that is missing is an error; a missing default file is not.
    """
    named = environ.get(ENV_CREDENTIALS_FILE)
    if named:
        return named, True
    home = environ.get("HOME") or environ.get("USERPROFILE")
    if not home:
        return None, False
    return os.path.join(home, PROFILE_DIR, PROFILE_NAME), False


class ProfileCredentials(CachedProvider):
    """The SDK's profile file: `[basic]` with `ak`, `sk` and optionally `security_token`."""

    def __init__(self, path: str, required: bool = False) -> None:
        super().__init__()
        self._path = path
        self._required = required

    def describe(self) -> str:
        return f"profile file {self._path}"

    def _fail(self, reason: str, *, absent: bool = False) -> CredentialError:
        message = f"{self.describe()}: {reason}"
        if absent and not self._required:
            return CredentialsNotFound(message)
        return CredentialError(message)

    def _load(self) -> Credentials:
        # The SDK's parser, interpolation included, so that a file means the same to both.
        parser = configparser.ConfigParser()
        try:
            with open(self._path, encoding="utf-8") as handle:
                parser.read_file(handle)
        except FileNotFoundError:
            raise self._fail("does not exist", absent=True) from None
        except UnicodeDecodeError:
            raise self._fail("is not UTF-8 text") from None
        except OSError as exc:
            raise self._fail(f"cannot be read: {exc.strerror or type(exc).__name__}") from None
        except configparser.Error as exc:
            # configparser quotes the offending line, which may hold a key: give the line only.
            raise self._fail(f"is not a valid INI file ({_config_error_where(exc)})") from None
        if not parser.has_section(PROFILE_SECTION):
            raise self._fail(f"has no [{PROFILE_SECTION}] section", absent=True)
        try:
            values = {
                key: parser.get(PROFILE_SECTION, key, fallback=None) or None
                for key in ("ak", "sk", "security_token", "idp_id", "id_token_file")
            }
        except configparser.Error:
            # Interpolation errors quote the raw value.
            raise self._fail(
                f"has a value in [{PROFILE_SECTION}] with a bad '%' interpolation"
            ) from None
        ak, sk = values["ak"], values["sk"]
        if ak and sk:
            return Credentials(
                access_key=ak, secret_key=sk, security_token=values["security_token"]
            )
        if values["idp_id"] and values["id_token_file"]:
            raise self._fail("federated credentials (idp_id, id_token_file) are not supported")
        raise self._fail(f"[{PROFILE_SECTION}] needs both ak and sk")


def _config_error_where(exc: configparser.Error) -> str:
    lineno = getattr(exc, "lineno", None)
    errors = getattr(exc, "errors", None)
    if lineno is None and errors:
        lineno = errors[0][0]
    return f"line {lineno}" if lineno is not None else type(exc).__name__


class NamedEnvCredentials(CachedProvider):
    """AK/SK (and optionally a security token) from environment variables named in the file.

    Empty variables count as unset. A variable that is not set is an error, not "no
    credentials here": the file asked for it explicitly.
    """

    def __init__(
        self,
        environ: Mapping[str, str],
        access_key_var: str,
        secret_key_var: str,
        security_token_var: str | None = None,
    ) -> None:
        super().__init__()
        self._environ = environ
        self._names = (access_key_var, secret_key_var, security_token_var)

    @property
    def variables(self) -> tuple[str, str, str | None]:
        return self._names

    def describe(self) -> str:
        return "environment variables " + ", ".join(n for n in self._names if n)

    def _load(self) -> Credentials:
        access_var, secret_var, token_var = self._names
        missing = [n for n in (access_var, secret_var, token_var) if n and not self._environ.get(n)]
        if missing:
            raise CredentialError(f"{self.describe()}: {', '.join(missing)} not set or empty")
        return Credentials(
            access_key=self._environ[access_var],
            secret_key=self._environ[secret_var],
            security_token=self._environ[token_var] if token_var else None,
        )


class FileCredentials(CachedProvider):
    """AK/SK (and optionally a security token) from files, one value each, stripped.

    Read again after ``invalidate()``, so keys rotated in the files are picked up.
    """

    def __init__(
        self, access_key_file: str, secret_key_file: str, security_token_file: str | None = None
    ) -> None:
        super().__init__()
        self._paths = (access_key_file, secret_key_file, security_token_file)

    @property
    def paths(self) -> tuple[str, str, str | None]:
        return self._paths

    def describe(self) -> str:
        return "credential files " + ", ".join(p for p in self._paths if p)

    def _read(self, path: str) -> str:
        try:
            with open(path, encoding="utf-8") as handle:
                value = handle.read().strip()
        except UnicodeDecodeError:
            raise CredentialError(f"{self.describe()}: {path} is not UTF-8 text") from None
        except OSError as exc:
            raise CredentialError(
                f"{self.describe()}: cannot read {path}: {exc.strerror or type(exc).__name__}"
            ) from None
        if not value:
            raise CredentialError(f"{self.describe()}: {path} is empty")
        return value

    def _load(self) -> Credentials:
        access_path, secret_path, token_path = self._paths
        return Credentials(
            access_key=self._read(access_path),
            secret_key=self._read(secret_path),
            security_token=self._read(token_path) if token_path else None,
        )
