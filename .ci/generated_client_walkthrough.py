"""A new user's first steps through a client generated from /v1/openapi.json (ADR 0015).

`.ci/generated-client` generates the package `ledger_client` with openapi-python-client and runs
this with it on the path: create an organization, a product, a policy and a license, read the
license back and validate its key on the client route. Only the generated client is used (no
hand-written HTTP), so a document that cannot drive the API fails here.

Usage: python generated_client_walkthrough.py BASE_URL TOKEN
"""

import sys
import uuid

from ledger_client import AuthenticatedClient, Client
from ledger_client.api.client import validate
from ledger_client.api.licenses import get_license, issue_license
from ledger_client.api.organizations import create_organization
from ledger_client.api.policies import create_policy
from ledger_client.api.products import create_product
from ledger_client.models import (
    CreateOrganization,
    CreatePolicy,
    CreateProduct,
    IssueLicenseBody,
    LicenseModel,
    LicenseView,
    LicenseWithKey,
    OrganizationKind,
    OrganizationView,
    PolicyView,
    ProductKind,
    ProductView,
    ValidateRequest,
)


def expect(response, status, kind):
    """The parsed body of a response with the expected status and type, or exit 1."""
    if response.status_code != status or not isinstance(response.parsed, kind):
        print(
            f"error: expected {status} {kind.__name__}, got {response.status_code}: "
            f"{response.content[:500]!r}",
            file=sys.stderr,
        )
        sys.exit(1)
    return response.parsed


def main() -> None:
    base, token = sys.argv[1], sys.argv[2]
    admin = AuthenticatedClient(base_url=base, token=token)
    suffix = uuid.uuid4().hex[:8]

    org = expect(
        create_organization.sync_detailed(
            client=admin,
            body=CreateOrganization(name=f"Acme {suffix}", kind=OrganizationKind.CUSTOMER),
        ),
        201,
        OrganizationView,
    )
    product = expect(
        create_product.sync_detailed(
            client=admin,
            body=CreateProduct(name=f"Studio {suffix}", kind=ProductKind.APPLICATION),
        ),
        201,
        ProductView,
    )
    policy = expect(
        create_policy.sync_detailed(
            client=admin,
            body=CreatePolicy(
                product_id=product.id,
                name="Pro",
                model=LicenseModel.NODE_LOCKED,
                seats=3,
                duration_days=365,
                features=["pro"],
                offline_allowed=True,
                offline_grace_days=14,
                payment_grace_days=7,
            ),
        ),
        201,
        PolicyView,
    )
    issued = expect(
        issue_license.sync_detailed(
            client=admin,
            body=IssueLicenseBody(policy_id=policy.id, organization_id=org.id),
        ),
        201,
        LicenseWithKey,
    )
    license_id = issued.id
    read = expect(get_license.sync_detailed(license_id, client=admin), 200, LicenseView)
    assert read.status == "active", read.status
    assert read.features == ["pro"], read.features

    # The client route, with the product's App GUID in X-App-Id.
    app = Client(base_url=base, headers={"X-App-Id": str(product.app_id)})
    answer = validate.sync_detailed(client=app, body=ValidateRequest(key=issued.key))
    if answer.status_code != 200 or answer.parsed is None or not answer.parsed.valid:
        print(f"error: validation: {answer.status_code} {answer.content!r}", file=sys.stderr)
        sys.exit(1)
    print(f"generated client: organization, product, policy and license {license_id} created; key valid")


if __name__ == "__main__":
    main()
