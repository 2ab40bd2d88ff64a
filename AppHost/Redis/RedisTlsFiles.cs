using System.Net;
using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace AppHost.Redis;

/// <summary>
/// The certificates of the local redis-server when <c>Redis:Tls=true</c>: a certificate authority made for this AppHost
/// run, and a server certificate it signed for <c>localhost</c>, <c>127.0.0.1</c> and <c>::1</c>, as PEM files in the
/// run's data directory (<c>redis-ca.crt</c>, <c>redis.crt</c>, <c>redis.key</c>). The chat nodes trust that
/// authority only for Redis (StackExchange.Redis's <c>TrustIssuer</c>); nothing is added to any system store.
/// </summary>
public sealed class RedisTlsFiles
{
    private RedisTlsFiles(string caCertificate, string certificate, string key)
    {
        CaCertificate = caCertificate;
        Certificate = certificate;
        Key = key;
    }

    /// <summary>The certificate authority (PEM): what a client trusts.</summary>
    public string CaCertificate { get; }

    /// <summary>The server certificate (PEM).</summary>
    public string Certificate { get; }

    /// <summary>The server certificate's private key (PEM, PKCS#8).</summary>
    public string Key { get; }

    /// <summary>Makes the authority and the server certificate, valid from a day ago for 30 days, into <paramref name="directory"/>.</summary>
    public static RedisTlsFiles Create(string directory)
    {
        var now = DateTimeOffset.UtcNow;
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=ReferenceApp Redis CA (this run only)", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        using var ca = caRequest.CreateSelfSigned(now.AddDays(-1), now.AddDays(30));

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        names.AddIpAddress(IPAddress.IPv6Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        using var certificate = request.Create(ca, now.AddDays(-1), now.AddDays(30), RandomNumberGenerator.GetBytes(16));

        var files = new RedisTlsFiles(Path.Combine(directory, "redis-ca.crt"), Path.Combine(directory, "redis.crt"), Path.Combine(directory, "redis.key"));
        File.WriteAllText(files.CaCertificate, ca.ExportCertificatePem());
        File.WriteAllText(files.Certificate, certificate.ExportCertificatePem());
        File.WriteAllText(files.Key, key.ExportPkcs8PrivateKeyPem());
        return files;
    }

    /// <summary>Validates a server certificate against this authority only (for the AppHost's own RESP client).</summary>
    public bool Validate(X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (certificate is null || (errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0)
        {
            return false;
        }

        using var authority = X509CertificateLoader.LoadCertificate(PemToDer(File.ReadAllText(CaCertificate)));
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(authority);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        using var server = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        return chain.Build(server);
    }

    private static byte[] PemToDer(string pem)
    {
        var fields = PemEncoding.Find(pem);
        return Convert.FromBase64String(pem[fields.Base64Data]);
    }
}
