import fs from 'fs';
import crypto from 'crypto';

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


// Cache keys change whenever these directories change: the helper replaces
// the password file by rename, and uploads, copies and deletes touch the
// packages dir.
function mtime(path) {
    try {
        return String(fs.statSync(path).mtimeMs);
    } catch (e) {
        return 'missing';
    }
}

function passwords_version(r) {
    return mtime('/data/auth');
}

function normalize(name) {
    return name.toLowerCase().replace(/[-_.]+/g, '-');
}

// The version of one project's index page: the names of the files that can
// belong to it (normalized names starting with "<project>-"), so an upload or
// a copy elsewhere leaves its cached page valid. Listed once per change of
// the packages dir and shared by all workers; any other page (the project
// list) takes the directory's own version.
function packages_version(r) {
    var dir = mtime('/data/packages');
    var match = r.uri.match(/^\/simple\/([^\/]+)\/$/);
    if (!match) {
        return dir;
    }
    try {
        return project_version(ngx.shared.packages, dir, normalize(match[1]));
    } catch (e) {
        // Say a listing outgrew the shared zone: the whole dir's version is always right.
        return dir;
    }
}

function project_version(shared, dir, project) {
    var key = dir + '|' + project;
    var version = shared.get(key);
    if (version !== undefined) {
        return version;
    }
    var listing = shared.get(dir);
    if (listing === undefined) {
        listing = '\n' + fs.readdirSync('/data/packages').map(normalize).join('\n') + '\n';
        shared.set(dir, listing);
    }
    var prefix = '\n' + project + '-';
    var names = [];
    for (var at = listing.indexOf(prefix); at !== -1; at = listing.indexOf(prefix, at + 1)) {
        names.push(listing.slice(at + 1, listing.indexOf('\n', at + 1)));
    }
    version = 'p' + crypto.createHash('sha1').update(names.sort().join('\n')).digest('hex');
    shared.set(key, version);
    return version;
}


// pypiserver refuses a re-upload (409, or 400 for twine) with advice to start
// it with --overwrite, which an appliance user cannot do. Say it in the
// appliance's terms; other refusals pass unchanged. Each request has its own
// copy of this module's variables, so the body can be collected here.
var refusal = null;

function upload_refusal_header(r) {
    if (r.method === 'POST' && (r.status === 400 || r.status === 409)) {
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
        text = exists[1] + ' already exists on this index. Published files never change: '
            + 'give the release a new version number and upload that.';
    }
    return text + '\n';
}

export default {utf8_authorization, passwords_version, packages_version,
                upload_refusal_header, upload_refusal_body};
