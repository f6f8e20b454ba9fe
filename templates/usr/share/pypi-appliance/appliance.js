import fs from 'fs';

// pip and twine (python-requests) encode Basic credentials as Latin-1, most
// other clients as UTF-8, and pypiserver rejects anything but UTF-8. Pass
// UTF-8 through and re-encode Latin-1, so one non-ASCII password works for all.
// Anything but Basic "user:password" is no credentials at all: ''.
function utf8_authorization(r) {
    var header = r.headersIn.Authorization;
    var match = header && header.match(/^Basic\s+([A-Za-z0-9+\/=]+)\s*$/i);
    if (!match) {
        return '';
    }
    var raw = Buffer.from(match[1], 'base64');
    if (raw.indexOf(0x3a) < 0) {
        return '';
    }
    try {
        new TextDecoder('utf-8', {fatal: true}).decode(raw);
        return header;
    } catch (e) {
        var text = '';
        for (var i = 0; i < raw.length; i++) {
            text += String.fromCharCode(raw[i]);
        }
        return 'Basic ' + Buffer.from(text, 'utf8').toString('base64');
    }
}


function normalize(name) {
    return name.toLowerCase().replace(/[-_.]+/g, '-');
}

// PEP 691 content negotiation for Accept headers that weigh the formats
// with q-values (the map in nginx.conf takes the usual ones): 'json' when
// the JSON type has the highest q, else 'html' (the default, as PEP 691 allows).
var JSON_TYPES = ['application/vnd.pypi.simple.v1+json', 'application/vnd.pypi.simple.latest+json'];
var HTML_TYPES = ['application/vnd.pypi.simple.v1+html', 'application/vnd.pypi.simple.latest+html',
                  'text/html', '*/*'];

function accept_q(header, types) {
    var best = -1;
    (header || '').split(',').forEach(function (part) {
        var fields = part.split(';');
        if (types.indexOf(fields[0].trim().toLowerCase()) < 0) {
            return;
        }
        var q = 1;
        fields.slice(1).forEach(function (param) {
            var kv = param.split('=');
            if (kv[0].trim().toLowerCase() === 'q') {
                q = parseFloat(kv[1]);
            }
        });
        if (!isNaN(q) && q > best) {
            best = q;
        }
    });
    return best;
}

function negotiate(header) {
    var json = accept_q(header, JSON_TYPES);
    return json > 0 && json >= accept_q(header, HTML_TYPES) ? 'json' : 'html';
}

function negotiated_format(r) {
    return negotiate(r.headersIn.Accept);
}

// A page the indexer has not made (see @simple_miss in nginx.conf): a name
// the appliance does not hold.
function simple_miss(r) {
    var match = r.uri.match(/^\/_index\/(json|html)\/([^\/]+)\/$/);
    if (!fs.existsSync('/data/index/simple/index.html')) {
        r.internalRedirect('@pypiserver');
        return;
    }
    // Not a project name (PEP 508): no redirect, no upstream, whatever it holds.
    if (match && !/^[A-Za-z0-9._-]+$/.test(match[2])) {
        match = null;
    }
    if (match && normalize(match[2]) !== match[2]) {
        r.return(301, '/simple/' + normalize(match[2]) + '/');
        return;
    }
    // Not held here: the upstream's page, if one is set.
    if (match && r.variables.from_upstream === '1') {
        r.internalRedirect('/_upstream/' + match[1] + '/' + match[2] + '/');
        return;
    }
    r.headersOut['Content-Type'] = 'text/plain; charset=utf-8';
    r.return(404, 'no project ' + (match ? match[2] : '') + ' on this index\n');
}


// pypiserver refuses a re-upload of other contents (409, or 400 for twine)
// with advice to start it with --overwrite, which an appliance user cannot do.
// Say it in the appliance's terms; other refusals (a removal's 403 too) come
// as plain text, in their own words. Each request has its own
// copy of this module's variables, so the body can be collected here.
var refusal = null;

function upload_refusal_header(r) {
    if (r.method === 'POST' && (r.status === 400 || r.status === 403 || r.status === 409 || r.status === 507)) {
        refusal = '';
        delete r.headersOut['Content-Length'];
        r.headersOut['Content-Type'] = 'text/plain; charset=utf-8';
    }
}

function upload_refusal_body(r, data, flags) {
    if (refusal === null) {
        r.sendBuffer(data, flags);
        return;
    }
    refusal += data;
    if (flags.last) {
        r.sendBuffer(refusal_text(refusal), flags);
    }
}

function unescape_html(text) {
    return text.replace(/&#0*39;|&#x27;/g, "'").replace(/&quot;/g, '"').replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

function refusal_text(body) {
    var pre = body.match(/<pre>([\s\S]*?)<\/pre>/);
    var text = unescape_html(pre ? pre[1] : body).trim();
    var exists = text.match(/^Package '(.+)' already exists/);
    if (exists) {
        text = exists[1] + ' already exists on this index, with other contents. Published files never change: '
            + 'give the release a new version number and upload that.';
    }
    return text + '\n';
}

export default {utf8_authorization, negotiated_format, negotiate, simple_miss, normalize, refusal_text,
                upload_refusal_header, upload_refusal_body};
