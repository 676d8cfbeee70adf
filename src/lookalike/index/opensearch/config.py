"""How to reach an OpenSearch cluster: hosts, basic auth, TLS or AWS SigV4 signing, and the k-NN engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

from lookalike.errors import IndexError_

Engine = Literal["faiss", "lucene"]
ENGINES: tuple[Engine, ...] = ("faiss", "lucene")
DEFAULT_URL = "http://127.0.0.1:9200"

URL_OPTIONS = {"verify_certs", "ca_certs", "aws_region", "aws_service", "timeout", "engine"}


@dataclass
class OpenSearchConfig:
    """How to reach a cluster: hosts, and basic auth, TLS or AWS SigV4 signing."""

    hosts: list[str] = field(default_factory=lambda: [DEFAULT_URL])
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_ssl: bool | None = None
    """None: TLS when the hosts are https URLs."""
    verify_certs: bool = True
    ca_certs: str | None = None
    aws_region: str | None = None
    """Set to sign requests with SigV4 (boto3's default credentials) instead of basic auth."""
    aws_service: Literal["es", "aoss"] = "es"
    timeout: float = 30.0
    engine: Engine = "faiss"
    """The k-NN engine of indexes created with this config."""

    def __post_init__(self) -> None:
        if self.aws_service not in ("es", "aoss"):
            raise IndexError_(
                f"aws_service must be 'es' (managed domain) or 'aoss' (Serverless), got {self.aws_service!r}"
            )
        if self.engine not in ENGINES:
            raise IndexError_(f"engine must be one of {', '.join(ENGINES)}, got {self.engine!r}")

    @classmethod
    def from_url(cls, url: str) -> OpenSearchConfig:
        """``https://user:pass@host:9200?verify_certs=false&ca_certs=/ca.pem&aws_region=eu-west-1&engine=lucene``."""
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise IndexError_(f"bad OpenSearch URL {url!r}: use http(s)://[user:password@]host[:port]")
        options = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        if unknown := set(options) - URL_OPTIONS:
            raise IndexError_(f"unknown OpenSearch URL options {sorted(unknown)}; known: {sorted(URL_OPTIONS)}")
        address = parts.netloc.rsplit("@", 1)[-1]
        path = parts.path.rstrip("/")
        try:
            timeout = float(options.get("timeout", 30.0))
        except ValueError as error:
            raise IndexError_(f"bad timeout in OpenSearch URL {url!r}") from error
        return cls(
            hosts=[f"{parts.scheme}://{address}{path}"],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            use_ssl=parts.scheme == "https",
            verify_certs=options.get("verify_certs", "true").lower() not in ("false", "0", "no"),
            ca_certs=options.get("ca_certs"),
            aws_region=options.get("aws_region"),
            aws_service=options.get("aws_service", "es"),  # type: ignore[arg-type]
            timeout=timeout,
            engine=options.get("engine", "faiss"),  # type: ignore[arg-type]
        )

    def describe(self) -> str:
        return ", ".join(self.hosts)

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``opensearchpy.OpenSearch``."""
        use_ssl = self.use_ssl if self.use_ssl is not None else any(h.startswith("https://") for h in self.hosts)
        kwargs: dict[str, Any] = {
            "hosts": list(self.hosts),
            "use_ssl": use_ssl,
            "verify_certs": self.verify_certs,
            "timeout": self.timeout,
        }
        if self.ca_certs:
            kwargs["ca_certs"] = self.ca_certs
        if self.aws_region:
            from opensearchpy import RequestsHttpConnection

            kwargs["http_auth"] = self._aws_auth()
            kwargs["connection_class"] = RequestsHttpConnection  # what the requests-based signer plugs into
        elif self.username is not None:
            kwargs["http_auth"] = (self.username, self.password or "")
        return kwargs

    def connect(self) -> Any:
        """A new ``opensearchpy.OpenSearch`` client."""
        try:
            from opensearchpy import OpenSearch
        except ImportError as error:
            raise IndexError_(
                "the OpenSearch backend needs opensearch-py: pip install 'lookalike[opensearch]'"
            ) from error
        return OpenSearch(**self.client_kwargs())

    def _aws_auth(self) -> Any:
        try:
            import boto3
            from opensearchpy import RequestsAWSV4SignerAuth
        except ImportError as error:
            raise IndexError_("signing OpenSearch requests for AWS needs boto3: pip install boto3") from error
        credentials = boto3.Session().get_credentials()
        if credentials is None:
            raise IndexError_(
                f"no AWS credentials (environment, ~/.aws or an instance role) to sign requests to {self.describe()}"
            )
        return RequestsAWSV4SignerAuth(credentials, self.aws_region, self.aws_service)
