// node-oidc-provider 8.x with two worker processes (node:cluster), one confidential client
// allowed client_credentials: the comparison peer for emta's benchmark (idp/bench/compare.sh).
import cluster from 'node:cluster';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 8600);
const workers = Number(process.env.WORKERS || 2);

if (cluster.isPrimary) {
  for (let i = 0; i < workers; i += 1) cluster.fork();
} else {
  const provider = new Provider(`http://localhost:${port}`, {
    clients: [{
      client_id: 'bench',
      client_secret: process.env.CLIENT_SECRET || 'bench-secret',
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      scope: 'presale.read',
    }],
    scopes: ['openid', 'presale.read'],
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
    },
  });
  provider.listen(port);
}
