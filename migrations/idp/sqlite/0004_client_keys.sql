-- Client authentication with the client's own key (private_key_jwt: RFC 7523 and OpenID
-- Connect Core §9), for manufacturers whose security officers will not hold a shared
-- secret. A client authenticates one way only: the method it is registered with.
-- * token_endpoint_auth_method: 'client_secret_basic' (the secret, in Basic or the form)
--   or 'private_key_jwt'.
-- * jwks: the client's public keys, inline (a JWKS document), or
-- * jwks_uri: where the client publishes them (fetched, cached, refetched for a new kid).
ALTER TABLE clients ADD COLUMN token_endpoint_auth_method TEXT NOT NULL
    DEFAULT 'client_secret_basic'
    CHECK (token_endpoint_auth_method IN ('client_secret_basic', 'private_key_jwt'));
ALTER TABLE clients ADD COLUMN jwks TEXT;
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;
