"""ISO/IEC 18013-5 mdoc issuance, bound to the holder's device key (no Temporal here).

proof.py        OpenID4VCI proof-of-possession JWT checks
claims.py       mDL data elements: checked, plus portrait and age attestations
mso.py          IssuerSignedItems, Mobile Security Object, COSE_Sign1 -> IssuerSigned
issuer.py       CredentialIssuer: exactly-once issuance over the store and blob store
keystore.py     IACA + document signer keys, encrypted at rest; rotation
certificates.py the certificate profiles (made and checked side by side)
verify.py       the relying party's checks (IssuerSigned, DeviceResponse)
holder.py       the device side for tests, demos and the CLI
cbor.py cose.py es256.py jwk.py document.py   encodings and shared shapes
cli.py          idflow keys ..., idflow credential verify
"""
