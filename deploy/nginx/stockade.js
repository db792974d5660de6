// njs for deploy/nginx/stockade.conf (docs/deployment-nginx.md): the cache key of Stockade's
// auth_request answers. A SHA-256 of the request line (method and URL, a /t/TOKEN/ included),
// the Authorization header, the session cookie and the conditional headers, so that nginx never
// writes a credential in clear into its cache. An empty key means "do not cache": a Basic
// header carrying a password rather than a token (a hash of a password could be guessed from).
import crypto from 'crypto';

function basicWithPassword(authorization) {
    if (!/^basic /i.test(authorization)) {
        return false;
    }
    var decoded;
    try {
        decoded = Buffer.from(authorization.slice(6).trim(), 'base64').toString();
    } catch (e) {
        return true;
    }
    var colon = decoded.indexOf(':');
    var user = colon < 0 ? decoded : decoded.slice(0, colon);
    var password = colon < 0 ? '' : decoded.slice(colon + 1);
    return !/^stk[-_]/.test(password) && !/^stk[-_]/.test(user);
}

function authz_key(r) {
    var authorization = r.headersIn['Authorization'] || '';
    if (basicWithPassword(authorization)) {
        return '';
    }
    var hash = crypto.createHash('sha256');
    hash.update(r.variables.request || '');
    hash.update('\n' + authorization);
    hash.update('\n' + (r.variables.cookie_stockade_session || ''));
    hash.update('\n' + (r.headersIn['If-None-Match'] || ''));
    hash.update('\n' + (r.headersIn['Range'] ? 'range' : ''));
    return hash.digest('hex');
}

export default {authz_key};
