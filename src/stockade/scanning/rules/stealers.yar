/*
 * Credential and token stealers: secrets read from well-known files and sent away.
 */

rule stockade_stealer_credential_harvest
{
    meta:
        verdict = "malicious"
        description = "reads two or more kinds of stored credentials (cloud, ssh keys, browser, package-registry tokens) and sends data out"
    strings:
        $aws = ".aws/credentials"
        $ssh = /\.ssh\/id_(rsa|dsa|ecdsa|ed25519)\b/
        $browser = /(Chrome|Chromium|Brave-Browser|BraveSoftware|Edge|Opera)[^\n]{0,60}Login Data/
        $npmrc = ".npmrc"
        $pypirc = ".pypirc"
        $condarc = ".condarc"
        $gitcred = ".git-credentials"
        $docker = ".docker/config.json"
        $kube = ".kube/config"
        $gcloud = "gcloud/credentials.db"
        $x1 = /requests\.(post|put)\s*\(/
        $x2 = /\burlopen\s*\(/
        $x3 = /http\.client\.HTTPS?Connection\s*\(/
        $x4 = /\/api\/webhooks\/[0-9]/
        $x5 = /\bcurl\s[^\n]{0,80}(-d|--data|-F|--form|-T|--upload-file)\b/
        $x6 = /\.sendall\s*\(/
        $x7 = /smtplib\.SMTP/
    condition:
        2 of ($aws, $ssh, $browser, $npmrc, $pypirc, $condarc, $gitcred, $docker, $kube, $gcloud)
        and any of ($x*)
}

rule stockade_stealer_secret_file_exfil
{
    meta:
        verdict = "malicious"
        description = "a credential or token file read and, a few lines later, sent to a URL written in the code (ssh key, cloud credentials, .npmrc/.pypirc/.condarc token)"
    strings:
        $read_send = /(\.aws\/credentials|\.ssh\/id_(rsa|dsa|ecdsa|ed25519)|\.npmrc|\.pypirc|\.condarc|\.netrc|\.git-credentials|\.docker\/config\.json)[^\x00]{0,400}(requests\.(post|put)\s*\(\s*f?["']https?:\/\/|urlopen\s*\(\s*f?["']https?:\/\/|\.Request\s*\(\s*f?["']https?:\/\/|\/api\/webhooks\/|\bcurl\s[^\n]{0,60}(-d|--data|-F|-T)\s[^\n]{0,80}https?:\/\/)/
    condition:
        $read_send
}

rule stockade_stealer_browser_passwords
{
    meta:
        verdict = "malicious"
        description = "decrypts saved browser passwords or cookies (Login Data / Cookies with the Local State key)"
    strings:
        $login = "Login Data"
        $cookies = /[\\\/]Network[\\\/]Cookies\b/
        $dpapi = "CryptUnprotectData"
        $key = "encrypted_key"
        $state = "Local State"
        $query = /SELECT\s+(action_url|origin_url)\s*,\s*username_value\s*,\s*password_value/ nocase
    condition:
        $query or (($login or $cookies) and $state and ($dpapi or $key))
}

rule stockade_stealer_discord_token
{
    meta:
        verdict = "malicious"
        description = "searches Discord's local storage for account tokens and sends them out"
    strings:
        $token_re1 = "[\\w-]{24}\\.[\\w-]{6}\\.[\\w-]{27}"
        $token_re2 = "mfa\\.[\\w-]{84}"
        $token_re3 = "dQw4w9WgXcQ:"
        $leveldb = /discord[^\n]{0,80}Local Storage[^\n]{0,20}leveldb/ nocase
        $webhook = /discord(app)?\.com\/api\/webhooks\// nocase
        $x1 = /requests\.(post|put)\s*\(/
        $x2 = /\burlopen\s*\(/
    condition:
        (any of ($token_re*) or $leveldb) and ($webhook or any of ($x*))
}

rule stockade_exfil_discord_webhook
{
    meta:
        verdict = "suspicious"
        description = "a Discord webhook URL with its secret token embedded (a common exfiltration channel)"
    strings:
        $hook = /discord(app)?\.com\/api\/webhooks\/[0-9]{17,20}\/[A-Za-z0-9_\-]{60,}/ nocase
    condition:
        $hook
}
