import fs from 'fs';

// pip and twine (python-requests) encode Basic credentials as Latin-1, most
// other clients as UTF-8, and pypiserver rejects anything but UTF-8. Pass
// UTF-8 through and re-encode Latin-1, so one non-ASCII password works for all.
function utf8_authorization(r) {
    var header = r.headersIn.Authorization;
    if (!header) {
        return '';
    }
    var match = header.match(/^Basic\s+([A-Za-z0-9+\/=]+)\s*$/i);
    if (!match) {
        return header;
    }
    var raw = Buffer.from(match[1], 'base64');
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

function packages_version(r) {
    return mtime('/data/packages');
}

export default {utf8_authorization, passwords_version, packages_version};
