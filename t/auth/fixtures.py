"""Key pairs, JWKS documents and JWTs for the auth tests, made at test time
(nothing secret is committed). Tokens are signed by PyJWT (python3-jwt)
and, where PyJWT refuses to make the token an attack needs, assembled and
signed here with python3-cryptography.

    from fixtures import Keys
    k = Keys(tmpdir)                    # RSA x3, EC P-256, EC P-384, RSA 1024
    k.path("rsa1")                      # public PEM file
    k.token("rsa1", "RS256", perms=["tasks:create"])
    k.jwks(["rsa1", "ec256"])           # JWKS document (dict)
"""
import base64
import hashlib
import hmac
import json
import os
import time

import jwt
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils

ISSUER = "tasker-core"
AUDIENCE = "tasker-api"

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def b64url(data):
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(n, length=None):
    length = length or (n.bit_length() + 7) // 8
    return b64url(n.to_bytes(length, "big"))


class Keys:
    """Generates the key pairs once and writes their public halves."""

    def __init__(self, directory):
        self.dir = directory
        self.private = {
            "rsa1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "rsa2": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "rsa3": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ec256": ec.generate_private_key(ec.SECP256R1()),
            "ec384": ec.generate_private_key(ec.SECP384R1()),
            "rsa1024": rsa.generate_private_key(public_exponent=65537, key_size=1024),
        }
        for name in self.private:
            with open(self.path(name), "wb") as f:
                f.write(self.public_pem(name))
            with open(self.private_path(name), "wb") as f:
                f.write(self.private_pem(name))

    def path(self, name):
        return os.path.join(self.dir, name + ".pub.pem")

    def private_path(self, name):
        return os.path.join(self.dir, name + ".key.pem")

    def public_pem(self, name):
        return self.private[name].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    def pkcs1_pem(self, name):
        return self.private[name].public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)

    def private_pem(self, name):
        return self.private[name].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())

    # ---------------------------------------------------------------- JWKS

    def jwk(self, name, kid=None, alg=None, use="sig"):
        pub = self.private[name].public_key()
        if isinstance(pub, rsa.RSAPublicKey):
            nums = pub.public_numbers()
            d = {"kty": "RSA", "n": _int_b64(nums.n), "e": _int_b64(nums.e)}
        else:
            nums = pub.public_numbers()
            size = (pub.curve.key_size + 7) // 8
            d = {"kty": "EC", "crv": "P-256" if pub.curve.key_size == 256 else "P-384",
                 "x": _int_b64(nums.x, size), "y": _int_b64(nums.y, size)}
        d["kid"] = kid or name
        if use is not None:
            d["use"] = use
        if alg is not None:
            d["alg"] = alg
        return d

    def jwks(self, names, **kw):
        return {"keys": [self.jwk(n, **kw) for n in names]}

    def write_jwks(self, path, names, extra=None):
        doc = self.jwks(names)
        if extra:
            doc["keys"].extend(extra)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)  # readers never see half a file

    # ---------------------------------------------------------------- tokens

    @staticmethod
    def claims(perms=("tasks:create",), sub="svc-test", iss=ISSUER, aud=AUDIENCE,
               exp_in=3600, nbf_in=None, claim="permissions", drop=(), **extra):
        now = int(time.time())
        c = {"sub": sub, "iss": iss, "aud": aud, "iat": now, "exp": now + exp_in}
        if perms is not None:
            c[claim] = list(perms)
        if nbf_in is not None:
            c["nbf"] = now + nbf_in
        c.update(extra)
        for k in drop:
            c.pop(k, None)
        return c

    def token(self, name, alg, kid=None, headers=None, **claims_kw):
        """A token signed by PyJWT with key `name`."""
        h = dict(headers or {})
        if kid is not None:
            h["kid"] = kid
        return jwt.encode(self.claims(**claims_kw), self.private_pem(name), algorithm=alg,
                          headers=h or None)

    def raw_token(self, name, alg, header, payload):
        """Signs exact header/payload texts (str), for tokens PyJWT will
        not produce (duplicate members, odd headers)."""
        signing_input = (b64url(header) + "." + b64url(payload)).encode()
        return signing_input.decode() + "." + b64url(self.sign(name, alg, signing_input))

    def sign(self, name, alg, data):
        key = self.private[name]
        h = _HASHES[alg[2:]]()
        if alg.startswith("RS"):
            return key.sign(data, padding.PKCS1v15(), h)
        if alg.startswith("PS"):
            return key.sign(data, padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size), h)
        der = key.sign(data, ec.ECDSA(h))
        r, s = utils.decode_dss_signature(der)
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")

    def hs256_with_public_pem(self, name, **claims_kw):
        """The key-confusion attack: HS256 keyed with the RSA public key's
        PEM text, which a naive verifier would use as the HMAC secret."""
        header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}))
        payload = b64url(json.dumps(self.claims(**claims_kw)))
        signing_input = (header + "." + payload).encode()
        mac = hmac.new(self.public_pem(name), signing_input, hashlib.sha256).digest()
        return signing_input.decode() + "." + b64url(mac)

    @staticmethod
    def b64url_json(value):
        return b64url(json.dumps(value))

    def unsigned(self, alg="none", signature="", **claims_kw):
        header = b64url(json.dumps({"alg": alg, "typ": "JWT"}))
        payload = b64url(json.dumps(self.claims(**claims_kw)))
        return header + "." + payload + "." + signature
